"""A scripted SIP phone in Python, and a reader for the switch's SIP trace.

:class:`ScriptedPhone` owns one UDP socket or one TCP connection on 127.0.0.1 and
builds and parses every message with :mod:`switch.sip.message`; digest answers come
from :class:`switch.sip.auth.DigestClient`. It is deliberately synchronous and
bounded: every receive has a timeout, so a test can never hang on a silent server.
Requests that arrive while the phone waits for a response (the registrar's OPTIONS
keep-alives) are kept in :attr:`ScriptedPhone.inbox` for the test to inspect.

:func:`trace_entries` splits the file written by ``ccswitch serve --sip-trace`` into
one :class:`TraceEntry` per message, so tests can count exchanges on the wire.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

from switch.sip.auth import DigestClient
from switch.sip.errors import BadMessage
from switch.sip.message import (
    Headers,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)
from switch.sip.uri import parse_uri
from tests.harness import LOOPBACK

# RFC 3261 section 8.1.1.7: branches start with the magic cookie.
MAGIC_COOKIE = "z9hG4bK"
RECEIVE_SIZE = 65535
DEFAULT_TIMEOUT = 2.0

# One entry header of ccswitch.logs.SipTrace:
#   <ISO time> recv|sent UDP|TCP|TLS <local> <-|-> <remote> (<n> bytes)
TRACE_HEADER = re.compile(
    r"^(?P<stamp>\S+) (?P<direction>recv|sent) (?P<transport>UDP|TCP|TLS) "
    r"(?P<local>\S+) (?:<-|->) (?P<remote>\S+) \((?P<size>\d+) bytes\)$",
    re.MULTILINE,
)


def new_token() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, kw_only=True)
class TraceEntry:
    """One message of the SIP trace, as the switch saw it."""

    direction: str  # "recv" or "sent", from the switch's point of view
    transport: str
    local: str
    remote: str
    text: str
    stamp: str = ""  # the entry's ISO time (UTC) as the trace wrote it

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0]

    def header(self, name: str) -> list[str]:
        """Values of header ``name`` (case-insensitive, full names only)."""
        prefix = name.lower() + ":"
        return [
            line.split(":", 1)[1].strip()
            for line in self.text.split("\n")
            if line.lower().startswith(prefix)
        ]


def trace_entries(text: str) -> list[TraceEntry]:
    """Split a SIP trace file into its messages, in order."""
    headers = list(TRACE_HEADER.finditer(text))
    entries = []
    for index, match in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        entries.append(
            TraceEntry(
                direction=match["direction"],
                transport=match["transport"],
                local=match["local"],
                remote=match["remote"],
                text=text[match.end() + 1 : end].rstrip("\n"),
                stamp=match["stamp"],
            )
        )
    return entries


@dataclass(frozen=True, kw_only=True)
class RegisterOutcome:
    """What a registration attempt sent and got back."""

    final: Response
    challenges: list[Response]
    authorizations: list[str]


@dataclass(kw_only=True)
class ScriptedPhone:
    """A SIP user agent driven step by step from a test, over UDP or TCP.

    :param server_port: the switch's SIP port on 127.0.0.1.
    :param user: the SIP user (AOR ``sip:USER@127.0.0.1``).
    :param password: the digest password.
    :param transport: ``"UDP"`` or ``"TCP"``.
    :param contact_port: the port written in the Contact; defaults to the socket's
        own port (set it to show that the switch uses the source address instead).
    """

    server_port: int
    user: str
    password: str
    transport: str = "UDP"
    contact_port: int | None = None
    inbox: deque[Request] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.call_id = f"{new_token()}@{LOOPBACK}"
        self.from_tag = new_token()
        self.cseq = 0
        self.auth = DigestClient(username=self.user, password=self.password)
        self._sock: socket.socket | None = None
        self._framer = StreamFramer()
        self._pending: deque[Request | Response] = deque()

    # -- socket -----------------------------------------------------------------------

    def open(self) -> ScriptedPhone:
        if self.transport == "UDP":
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.bind((LOOPBACK, 0))
        else:
            self._sock = socket.create_connection(
                (LOOPBACK, self.server_port), timeout=DEFAULT_TIMEOUT
            )
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ScriptedPhone:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def sock(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("phone is not open")
        return self._sock

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def contact(self) -> str:
        port = self.contact_port or self.local_port
        suffix = ";transport=tcp" if self.transport == "TCP" else ""
        return f"sip:{self.user}@{LOOPBACK}:{port}{suffix}"

    @property
    def registrar_uri(self) -> str:
        return f"sip:{LOOPBACK}:{self.server_port}"

    def send_bytes(self, data: bytes) -> None:
        if self.transport == "UDP":
            self.sock.sendto(data, (LOOPBACK, self.server_port))
        else:
            self.sock.sendall(data)

    def send(self, message: Request | Response) -> None:
        self.send_bytes(message.to_bytes())

    def receive(self, timeout: float = DEFAULT_TIMEOUT) -> Request | Response | None:
        """The next parseable message from the switch, or None after ``timeout``."""
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(RECEIVE_SIZE)
            except (TimeoutError, BlockingIOError):
                return None
            if self.transport == "UDP":
                chunks = [data]
            else:
                if not data:
                    raise ConnectionError("the switch closed the TCP connection")
                chunks = self._framer.feed(data)
            for chunk in chunks:
                try:
                    self._pending.append(parse_message(chunk))
                except BadMessage:
                    continue
            if self._pending:
                return self._pending.popleft()

    # -- requests ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        *,
        uri: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        contact: str | None = None,
        expires: int | None = None,
    ) -> Request:
        """A new request in this phone's dialog-less Call-ID, with the next CSeq."""
        self.cseq += 1
        host, port = LOOPBACK, self.local_port
        aor = f"sip:{self.user}@{LOOPBACK}"
        headers = Headers(
            [
                (
                    "Via",
                    f"SIP/2.0/{self.transport} {host}:{port}"
                    f";branch={MAGIC_COOKIE}{new_token()};rport",
                ),
                ("Max-Forwards", "70"),
                ("From", f"<{aor}>;tag={self.from_tag}"),
                ("To", f"<{aor}>"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.cseq} {method}"),
                ("User-Agent", "ccswitch-tests-phone"),
            ]
        )
        if contact is not None:
            headers.add("Contact", contact)
        if expires is not None:
            headers.add("Expires", str(expires))
        for name, value in extra or []:
            headers.add(name, value)
        return Request(
            method=method, uri=parse_uri(uri or self.registrar_uri), headers=headers
        )

    def wait_response(
        self, request: Request, timeout: float = DEFAULT_TIMEOUT
    ) -> Response:
        """The final response to ``request``; requests met meanwhile go to the inbox."""
        deadline = time.monotonic() + timeout
        branch = request.top_via.branch
        while True:
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise TimeoutError(
                    f"no final response to {request.method} in {timeout}s"
                )
            if isinstance(message, Request):
                self.inbox.append(message)
                continue
            if message.top_via.branch == branch and message.status >= 200:
                return message

    def exchange(self, request: Request, timeout: float = DEFAULT_TIMEOUT) -> Response:
        self.send(request)
        return self.wait_response(request, timeout)

    def register(
        self, *, expires: int = 300, extra: list[tuple[str, str]] | None = None
    ) -> RegisterOutcome:
        """REGISTER this phone's contact, answering digest challenges (at most two)."""
        challenges: list[Response] = []
        authorizations: list[str] = []
        request = self.request(
            "REGISTER", contact=f"<{self.contact}>", expires=expires, extra=extra
        )
        response = self.exchange(request)
        while response.status == 401 and len(challenges) < 2:
            challenges.append(response)
            values = self.auth.authorize(
                response.headers.get_all("WWW-Authenticate"),
                method="REGISTER",
                uri=self.registrar_uri,
            )
            if not values:
                break
            authorizations.extend(values)
            request = self.request(
                "REGISTER",
                contact=f"<{self.contact}>",
                expires=expires,
                extra=[*(extra or []), *(("Authorization", v) for v in values)],
            )
            response = self.exchange(request)
        return RegisterOutcome(
            final=response, challenges=challenges, authorizations=authorizations
        )

    def answer(self, request: Request, status: int = 200) -> Response:
        """Answer a request from the switch (e.g. an OPTIONS keep-alive)."""
        response = make_response(request, status, to_tag=new_token())
        self.send(response)
        return response
