"""The SIP stack at the asyncio rim: transports + transaction layer + request routing.

The transaction layer is sans-IO; this module gives it bytes from the transports,
the loop's monotonic clock as ``now``, and one ``call_at`` for its next deadline. It
is also the single boundary where the core's :class:`ProtocolError` becomes a
response (RFC 3261 section 8.2) and where unparseable bytes are dropped with one
DEBUG line (section 16.3 / 18.3), so that nothing the network sends can raise out
of here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from asyncio import get_running_loop
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from switch.sip.errors import BadMessage, ProtocolError
from switch.sip.headers import Via
from switch.sip.message import (
    Headers,
    Request,
    Response,
    check_request,
    error_response,
    make_response,
    parse_message,
)
from switch.sip.timers import Timers
from switch.sip.transaction import (
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
    TransactionTransportError,
    new_branch,
    new_tag,
    response_destination,
)
from switch.sip.uri import normalize_host
from switch.transport import Address, Transports

logger = logging.getLogger(__name__)

# TODO: issue 4 wants three times Sippy's calls per second on one core with media;
# python -m bench.b2bua measures 1.71x (1.60 ms of CPU per call against 2.84): the
# cost is spread over SIP parsing and building, transactions, call control and the
# media engine's set-up and relay (python -m bench.call_path --profile shows it).

#: What the switch answers to OPTIONS (section 11.2) and in 405 responses.
ALLOW = (
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, REFER, NOTIFY"
)
ACCEPT = "application/sdp"
#: Methods of RFC 3261 and its extensions; anything else is answered 501 (21.5.2).
KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "MESSAGE",
        "PUBLISH",
    }
)
# RFC 3261 20.37: the extensions we implement. Not RFC 3327 Path nor RFC 5626
# outbound (reg-id, flow tokens): a REGISTER requiring them gets 420.
SUPPORTED = frozenset({"replaces", "timer", "100rel"})

Handler = Callable[[Request, Address], Awaitable[Response | None] | Response | None]
TraceSink = Callable[[str, bytes, Address, tuple[str, int] | None], None]

# The events that fail a client transaction's pending request.
_FAILURE_EVENTS = (TransactionTimedOut, TransactionTransportError)


class RequestTimeout(Exception):
    """A client transaction got no final response (timer B or F fired)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StackStats:
    received: int
    sent: int
    dropped_unparseable: int
    rejected: int


class SipStack:
    """Owns the transaction layer's clock and routes requests to handlers by method.

    :param timers: T1/T2/T4 from the configuration.
    :param user_agent: the ``User-Agent``/``Server`` value we send.
    :param trace: called for every message in or out: direction ("in"/"out"),
        bytes, remote address, local address.
    """

    def __init__(
        self,
        *,
        timers: Timers,
        user_agent: str,
        udp_max_size: int = 1300,
        tcp_idle_timeout: float = 300.0,
        trace: TraceSink | None = None,
    ) -> None:
        self.layer = TransactionLayer(timers=timers)
        self.user_agent = user_agent
        self.trace = trace
        self.transports = Transports(
            on_message=self._on_message,
            udp_max_size=udp_max_size,
            tcp_idle_timeout=tcp_idle_timeout,
        )
        self.handlers: dict[str, Handler] = {}
        self._pending: dict[str, asyncio.Future[Response]] = {}
        self._provisional: dict[str, Callable[[Response], None]] = {}
        #: Called with a 2xx that reaches a client INVITE transaction after its final
        #: response was delivered: a retransmitted 2xx (our ACK was lost) or a second
        #: 2xx from a forking proxy downstream. The TU must ACK it (RFC 3261 13.2.2.4).
        self.on_late_2xx: Callable[[Response], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # True while the events of one message or timer are handed to the TU: what the
        # handlers send then goes out in one flush at the end, not one per send.
        self._batching = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._received = self._sent = self._dropped = self._rejected = 0
        # Our Via per transport, as (local address, text before the branch, host as
        # parse_via normalises it): built once, used for every request we send.
        self._via_prefixes: dict[str, tuple[tuple[str, int], str, str]] = {}

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, **listen: object) -> None:
        """Open the transports (arguments as :meth:`Transports.listen`)."""
        await self.transports.listen(**listen)  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        await self.transports.close()

    def stats(self) -> StackStats:
        return StackStats(
            received=self._received,
            sent=self._sent,
            dropped_unparseable=self._dropped,
            rejected=self._rejected,
        )

    @property
    def now(self) -> float:
        # The hot paths below spell this out: a property is a Python call each time.
        return get_running_loop().time()

    def local_address(self, transport: str = "UDP") -> tuple[str, int]:
        return self.transports.local.get(transport) or self.transports.local["UDP"]

    # -- receiving ----------------------------------------------------------------

    def _on_message(self, data: bytes, source: Address) -> None:
        self._received += 1
        if self.trace is not None:
            self.trace("in", data, source, self.transports.local.get(source[0]))
        try:
            message = parse_message(data)
        except BadMessage as exc:
            self._dropped += 1
            logger.debug(
                "unparseable message from %s:%s: %s", source[1], source[2], exc
            )
            # RFC 4475: a request we cannot read still gets its 400 where a Via can
            # be salvaged to address it; responses and ACKs are never answered.
            reply = error_response(data, exc)
            if reply is not None:
                self._rejected += 1
                with contextlib.suppress(BadMessage):
                    self._send_stateless(reply, source)
            return

        if isinstance(message, Request):
            try:
                check_request(message, supported=SUPPORTED)
                _stamp_top_via(message, source)
            except ProtocolError as exc:
                self._reject(message, source, exc)
                return
        try:
            events = self.layer.receive(message, source, get_running_loop().time())
        except ProtocolError as exc:
            if isinstance(message, Request):
                self._reject(message, source, exc)
            else:
                logger.debug(
                    "dropped response from %s:%s: %s", source[1], source[2], exc
                )
            return
        self._process(events)

    def _reject(self, request: Request, source: Address, exc: ProtocolError) -> None:
        """Answer a refused request statelessly (never an ACK: section 17.2.1)."""
        self._rejected += 1
        logger.info(
            "[%s] %s from %s:%s refused %d %s",
            request.headers.get("Call-ID") or "no Call-ID",
            request.method,
            source[1],
            source[2],
            exc.status,
            exc.reason,
        )
        if request.method == "ACK":
            return
        try:
            response = make_response(
                request,
                exc.status,
                exc.reason,
                to_tag=new_tag() if exc.status != 100 else None,
            )
        except BadMessage:
            return
        for name, value in exc.headers:
            response.headers.add(name, value)
        self._send_stateless(response, source)

    def _process(self, events: Sequence[object]) -> None:
        """Hand ``events`` to the TU, then send what it and the layer produced.

        What a handler sends meanwhile (a response, a request, an ACK) leaves in the
        one flush at the end, in the order it was sent: each send would otherwise
        drain the layer and look for its next deadline again.
        """
        batching, self._batching = self._batching, True
        try:
            for event in events:
                if isinstance(event, RequestReceived):
                    self._dispatch(event.request, event.source, event.transaction_key)
                elif isinstance(event, ResponseReceived):
                    self._response(event.transaction_key, event.response)
                elif isinstance(event, _FAILURE_EVENTS):
                    key = event.transaction_key
                    future = self._pending.pop(key, None)
                    self._provisional.pop(key, None)
                    if future is not None and not future.done():
                        future.set_exception(RequestTimeout(key))
        finally:
            self._batching = batching
            self._flush()

    def _response(self, key: str, response: Response) -> None:
        if response.status < 200:
            callback = self._provisional.get(key)
            if callback is not None:
                callback(response)
            return
        self._provisional.pop(key, None)
        future = self._pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result(response)
        elif response.status < 300 and self.on_late_2xx is not None:
            try:
                self.on_late_2xx(response)
            except Exception:
                logger.exception("[%s] late 2xx handler failed", response.call_id)

    def _dispatch(self, request: Request, source: Address, key: str | None) -> None:
        handler = self.handlers.get(request.method)
        if handler is None:
            if request.method == "ACK":
                return  # an ACK for a 2xx we do not know: nothing to answer (17.1.1.3)
            self.respond(request, self._default_response(request), transaction_key=key)
            return
        try:
            result = handler(request, source)
        except Exception as exc:
            self.respond(
                request, self._failure_response(request, exc), transaction_key=key
            )
            return
        if result is None:
            return  # the usual case: the handler answers (or not) by itself
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish(request, result, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.respond(request, result, transaction_key=key)

    async def _finish(
        self, request: Request, pending: Awaitable[Response | None], key: str | None
    ) -> None:
        try:
            response = await pending
        except Exception as exc:
            response = self._failure_response(request, exc)
        if response is not None:
            self.respond(request, response, transaction_key=key)

    def _failure_response(self, request: Request, exc: Exception) -> Response:
        """A handler's ProtocolError is its answer; anything else is our bug: 500."""
        if isinstance(exc, ProtocolError):
            return self._error_response(request, exc)
        logger.error(
            "[%s] handler for %s failed", request.call_id, request.method, exc_info=exc
        )
        return make_response(request, 500, "Server Internal Error", to_tag=new_tag())

    def _default_response(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self.options_response(request)
        if request.to.tag is not None:
            # Section 12.2.2: an in-dialog request for a dialog we do not have.
            return make_response(request, 481, "Call/Transaction Does Not Exist")
        if request.method not in KNOWN_METHODS:
            # Section 21.5.2: a method we do not recognise at all.
            return make_response(request, 501, "Not Implemented", to_tag=new_tag())
        response = make_response(request, 405, "Method Not Allowed", to_tag=new_tag())
        response.headers.set("Allow", ALLOW)
        return response

    def _error_response(self, request: Request, exc: ProtocolError) -> Response:
        response = make_response(request, exc.status, exc.reason, to_tag=new_tag())
        for name, value in exc.headers:
            response.headers.add(name, value)
        return response

    def options_response(self, request: Request) -> Response:
        """Section 11.2: say what we allow, accept and support."""
        response = make_response(request, 200, "OK", to_tag=new_tag())
        response.headers.set("Allow", ALLOW)
        response.headers.set("Accept", ACCEPT)
        response.headers.set("Supported", ", ".join(sorted(SUPPORTED)))
        response.headers.set("Accept-Language", "en, ru")
        return response

    # -- sending ------------------------------------------------------------------

    def respond(
        self,
        request: Request,
        response: Response,
        *,
        transaction_key: str | None = None,
    ) -> None:
        """Send ``response`` through the request's server transaction."""
        response.headers.set("Server", self.user_agent)
        layer = self.layer
        if transaction_key is None:
            # The request the TU was handed names its transaction; without it the
            # layer would parse the response's Via and From to find it.
            transaction_key = layer.server_transaction_key(request)
        try:
            layer.send_response(
                response, get_running_loop().time(), transaction_key=transaction_key
            )
        except Exception:
            logger.exception("[%s] cannot send %d", request.call_id, response.status)
        self._flush()

    async def request(
        self,
        request: Request,
        destination: Address,
        *,
        on_provisional: Callable[[Response], None] | None = None,
        add_via: bool = True,
    ) -> Response:
        """Send ``request`` in a new client transaction; return its final response.

        The top Via (our sent-by, a fresh branch, rport per RFC 3581) is added here.
        A request too large for UDP goes over TCP instead (section 18.1.1).

        :param add_via: False for a request that already carries the Via it must have
            (a CANCEL takes its INVITE's, section 9.1).
        :raises RequestTimeout: no final response before timer B/F.
        """
        return await self.send_request(
            request, destination, on_provisional=on_provisional, add_via=add_via
        )

    def send_request(
        self,
        request: Request,
        destination: Address,
        *,
        on_provisional: Callable[[Response], None] | None = None,
        add_via: bool = True,
    ) -> asyncio.Future[Response]:
        """:meth:`request`, sent at once, as a future of the final response.

        For a request whose answer nobody waits for (a BYE, a CANCEL): a callback on
        the future costs less than a task that awaits it, and the request leaves now
        rather than on the task's first step. The future fails with
        :class:`RequestTimeout` when timer B/F fires.
        """
        transport = destination[0]
        if add_via:
            self._add_via(request, transport)
        # Before the size check: the header counts towards the UDP limit.
        request.headers.set("User-Agent", self.user_agent)
        data = request.to_bytes()
        if add_via and transport == "UDP" and len(data) > self.transports.udp_max_size:
            destination = ("TCP", destination[1], destination[2])
            request.headers = Headers(list(request.headers)[1:])
            self._add_via(request, "TCP")
            data = request.to_bytes()
        loop = get_running_loop()
        key = self.layer.send_request(request, destination, loop.time(), data=data)
        future: asyncio.Future[Response] = loop.create_future()
        self._pending[key] = future
        if on_provisional is not None:
            self._provisional[key] = on_provisional
        self._flush()
        return future

    def send_ack(self, ack: Request, destination: Address) -> None:
        """Send the ACK for a 2xx: no transaction, a fresh branch (section 13.2.2.4).

        The TU keeps the ACK and sends it again for each retransmission of the 2xx.
        """
        if "Via" not in ack.headers:
            self._add_via(ack, destination[0])
        ack.headers.set("User-Agent", self.user_agent)
        try:
            self.layer.send_request(ack, destination, get_running_loop().time())
        except Exception:
            logger.exception("[%s] cannot send ACK", ack.call_id)
        self._flush()

    def _add_via(self, request: Request, transport: str) -> None:
        """Put our Via on top (section 8.1.1.7), above any the request already has."""
        local = self.local_address(transport)
        cached = self._via_prefixes.get(transport)
        if cached is None or cached[0] != local:
            host, port = local
            prefix = f"SIP/2.0/{transport} {host}:{port};branch="
            cached = (local, prefix, normalize_host(host))
            self._via_prefixes[transport] = cached
        (_, port), prefix, normalized = cached
        branch = new_branch()
        headers = request.headers
        headers.prepend("Via", f"{prefix}{branch};rport")
        # What parse_via would make of that line, so the transaction layer and the
        # trace need not parse our own Via back.
        headers._cache["top_via"] = Via(
            transport=transport,
            host=normalized,
            port=port,
            params={"branch": branch, "rport": None},
        )

    def _send_stateless(self, response: Response, source: Address) -> None:
        response.headers.set("Server", self.user_agent)
        try:
            destination = response_destination(response.top_via, source)
        except ProtocolError:
            # A Via we cannot read (RFC 4475 badinv01) cannot say where to answer;
            # the packet's source is the one address known to reach the sender.
            destination = source
        self._write(response.to_bytes(), destination)

    def _flush(self) -> None:
        if self._batching:  # _process flushes once its events are handled
            return
        for transmit in self.layer.take_outgoing():
            self._write(transmit.data, transmit.destination)
        # The loop is re-armed only when the earliest deadline moved.
        deadline = self.layer.next_deadline()
        if deadline != self._timer_at:
            self._reschedule_at(deadline)

    def _write(self, data: bytes, destination: Address) -> None:
        self._sent += 1
        if self.trace is not None:
            self.trace(
                "out", data, destination, self.transports.local.get(destination[0])
            )
        try:
            self.transports.send(data, destination)
        except Exception:  # a send failure is a lost packet, never a stuck stack
            logger.exception("send to %s %s:%s failed", *destination)

    # -- the clock ----------------------------------------------------------------

    def _reschedule_at(self, deadline: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            events = self.layer.handle_timer(get_running_loop().time())
        except Exception:
            logger.exception("transaction timer failed")
            events = []
        self._process(events)


def _stamp_top_via(request: Request, source: Address) -> None:
    """Section 18.2.1 and RFC 3581 section 4: note where the request really came from.

    ``received`` is added when the sent-by host is not the packet's source address, and
    an empty ``rport`` is filled with the source port; the response carries both back,
    so a phone behind NAT learns its public address and the reply finds the pinhole.
    """
    via = request.top_via
    host, port = source[1], source[2]
    changed = False
    # A received= or maddr= the sender wrote itself would steer our answers to a
    # third party (a reflector); what the packet says about its origin wins.
    if via.host.strip("[]") != host or "received" in via.params:
        via.params["received"] = host
        changed = True
    if "maddr" in via.params:
        # TODO: RFC 3261 18.2.2 multicast replies to maddr are not supported.
        del via.params["maddr"]
        changed = True
    if "rport" in via.params and not via.params["rport"]:
        via.params["rport"] = str(port)
        changed = True
    if not changed:
        return
    headers = request.headers
    first = headers.get("Via")
    if first is not None and "," not in first:
        # The usual case, one value on the first Via line: rewrite that line alone
        # and keep every other parsed header (From, To, CSeq...) cached.
        headers.replace_first("Via", str(via))
        headers._cache["top_via"] = via
        return
    lines: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name != "Via":
            lines.append((name, value))
        elif not any(n == "Via" for n, _ in lines):
            lines.append((name, str(via)))
            lines.extend(("Via", rest) for rest in request.headers.get_all("Via")[1:])
    request.headers = Headers(lines)
