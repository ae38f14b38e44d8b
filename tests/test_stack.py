"""The stack on real loopback sockets: routing, stateless refusals, client requests."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switch.sip.headers import parse_via
from switch.sip.message import Headers, Request, Response, parse_message
from switch.sip.timers import Timers
from switch.sip.uri import parse_uri
from switch.stack import RequestTimeout, SipStack
from tests.harness import free_port

HOST = "127.0.0.1"


@pytest.fixture
async def stack() -> AsyncIterator[SipStack]:
    sip = SipStack(
        timers=Timers(t1=0.02, t2=0.08, t4=0.1), user_agent="test/1", udp_max_size=1300
    )
    await sip.start(host=HOST, port=free_port())
    try:
        yield sip
    finally:
        await sip.stop()


class Peer:
    """A UDP socket playing the phone."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def request(
        self,
        method: str,
        *,
        extra: str = "",
        to_tag: str = "",
        branch: str = "z9hG4bKpeer1",
    ) -> bytes:
        to = f"<sip:{HOST}>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"{method} sip:{HOST} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch={branch};rport\r\n"
            f"From: <sip:peer@{HOST}>;tag=p1\r\nTo: {to}\r\n"
            f"Call-ID: stack-test-{branch}\r\nCSeq: 1 {method}\r\n"
            f"{extra}Content-Length: 0\r\n\r\n"
        ).encode()

    async def send(self, data: bytes, port: int) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data, (HOST, port))

    async def receive(self, timeout: float = 2.0) -> Response:
        data = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(self.sock, 65535), timeout
        )
        message = parse_message(data)
        assert isinstance(message, Response)
        return message

    def close(self) -> None:
        self.sock.close()


def _port(stack: SipStack) -> int:
    return stack.local_address("UDP")[1]


async def test_options_answered_with_capabilities(stack: SipStack) -> None:
    peer = Peer()
    await peer.send(peer.request("OPTIONS"), _port(stack))
    response = await peer.receive()
    assert response.status == 200
    assert "REGISTER" in (response.headers.get("Allow") or "")
    assert response.headers.get("Accept") == "application/sdp"
    assert response.to.tag
    peer.close()


@pytest.mark.parametrize(
    ("extra", "status", "header"),
    [
        ("Max-Forwards: 0\r\n", 483, None),
        ("Require: no-such-extension\r\n", 420, "Unsupported"),
        # RFC 3327 Path and RFC 5626 outbound are not implemented, so not Supported
        ("Require: path\r\n", 420, "Unsupported"),
        ("Require: outbound\r\n", 420, "Unsupported"),
    ],
)
async def test_bad_requests_are_refused_with_their_status(
    stack: SipStack, extra: str, status: int, header: str | None
) -> None:
    peer = Peer()
    await peer.send(peer.request("INVITE", extra=extra), _port(stack))
    response = await peer.receive()
    assert response.status == status
    if header:
        assert response.headers.get(header) == extra.split(": ")[1].strip()
    peer.close()


async def test_unknown_method_405_and_stray_in_dialog_481(stack: SipStack) -> None:
    peer = Peer()
    await peer.send(peer.request("PUBLISH"), _port(stack))
    assert (await peer.receive()).status == 405
    await peer.send(peer.request("NEWMETHOD", branch="z9hG4bKpeer3"), _port(stack))
    assert (await peer.receive()).status == 501
    await peer.send(
        peer.request("BYE", to_tag="nosuch", branch="z9hG4bKpeer2"), _port(stack)
    )
    assert (await peer.receive()).status == 481
    peer.close()


async def test_garbage_is_dropped_and_the_stack_keeps_answering(
    stack: SipStack,
) -> None:
    peer = Peer()
    good = peer.request("OPTIONS")
    for junk in (b"", b"\x00" * 64, b"garbage\r\n\r\n", good[:40], bytes(range(256))):
        await peer.send(junk, _port(stack))
    await peer.send(good, _port(stack))
    assert (await peer.receive()).status == 200
    assert stack.stats().dropped_unparseable >= 3
    peer.close()


async def test_unparseable_request_with_a_readable_via_gets_400(
    stack: SipStack,
) -> None:
    peer = Peer()
    lying = peer.request("OPTIONS").replace(
        b"Content-Length: 0", b"Content-Length: 999"
    )
    await peer.send(lying, _port(stack))
    response = await peer.receive()
    assert response.status == 400
    assert "Content-Length" in response.reason
    peer.close()


async def test_handler_bug_becomes_500_not_a_crash(stack: SipStack) -> None:
    def broken(request: Request, source: object) -> Response:
        raise RuntimeError("bug")

    stack.handlers["MESSAGE"] = broken
    peer = Peer()
    await peer.send(peer.request("MESSAGE"), _port(stack))
    assert (await peer.receive()).status == 500
    await peer.send(peer.request("OPTIONS", branch="z9hG4bKafter"), _port(stack))
    assert (await peer.receive()).status == 200
    peer.close()


def _options_to(port: int, transport: str = "UDP") -> Request:
    headers = Headers()
    headers.add("From", f"<sip:switch@{HOST}>;tag=s1")
    headers.add("To", f"<sip:phone@{HOST}:{port}>")
    headers.add("Call-ID", f"client-{port}-{transport}")
    headers.add("CSeq", "1 OPTIONS")
    headers.add("Max-Forwards", "70")
    return Request(
        method="OPTIONS", uri=parse_uri(f"sip:phone@{HOST}:{port}"), headers=headers
    )


async def test_our_via_follows_the_local_address_and_parses_as_cached() -> None:
    sip = SipStack(timers=Timers(), user_agent="test/1")
    sent: list[bytes] = []

    def send(data: bytes, destination: object) -> None:
        sent.append(data)

    sip.transports.send = send  # type: ignore[method-assign,assignment]
    branches = set()
    for host, port in (
        ("192.0.2.1", 5060),
        ("192.0.2.1", 5060),
        ("[2001:DB8::1]", 5070),
    ):
        sip.transports.local["UDP"] = (host, port)
        ack = _options_to(9)
        ack.method = "ACK"
        sip.send_ack(ack, ("UDP", HOST, 9))
        line = parse_message(sent[-1]).headers.get("Via")
        assert line is not None
        assert line.startswith(f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK")
        assert line.endswith(";rport")
        # The Via the stack cached for the request is what parsing its line gives.
        assert ack.top_via == parse_via(line)
        branches.add(ack.top_via.branch)
    assert len(branches) == 3


async def test_client_request_gets_final_response(stack: SipStack) -> None:
    peer = Peer()
    loop = asyncio.get_running_loop()

    async def answer() -> None:
        data, addr = await loop.sock_recvfrom(peer.sock, 65535)
        request = parse_message(data)
        assert isinstance(request, Request)
        assert request.top_via.branch and request.top_via.branch.startswith("z9hG4bK")
        reply = (
            "SIP/2.0 200 OK\r\n"
            + "".join(
                f"{n}: {v}\r\n"
                for n, v in request.headers
                if n in ("Via", "From", "To", "Call-ID", "CSeq")
            )
            + "Content-Length: 0\r\n\r\n"
        ).encode()
        await loop.sock_sendto(peer.sock, reply, addr)

    task = asyncio.ensure_future(answer())
    response = await stack.request(_options_to(peer.port), ("UDP", HOST, peer.port))
    await task
    assert response.status == 200
    peer.close()


async def test_client_request_times_out(stack: SipStack) -> None:
    peer = Peer()  # never answers; timer F = 64*T1 = 1.28 s with this T1
    with pytest.raises(RequestTimeout):
        await asyncio.wait_for(
            stack.request(_options_to(peer.port), ("UDP", HOST, peer.port)), 10
        )
    peer.close()


async def test_request_too_big_for_udp_goes_over_tcp(stack: SipStack) -> None:
    port = free_port()
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def on_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        data = b""
        while b"\r\n\r\n" not in data or len(data) < 1500:
            chunk = await reader.read(65535)
            if not chunk:
                break
            data += chunk
        received.set_result(data)
        writer.close()

    server = await asyncio.start_server(on_connection, HOST, port)
    request = _options_to(port)
    request.headers.add("X-Padding", "x" * 1500)
    pending = asyncio.ensure_future(stack.request(request, ("UDP", HOST, port)))
    data = await asyncio.wait_for(received, 5)
    assert b"SIP/2.0/TCP" in data.split(b"\r\n")[1]
    pending.cancel()
    server.close()


async def test_user_agent_counts_towards_the_udp_limit() -> None:
    """A request that fits only without our User-Agent still goes over TCP."""
    sip = SipStack(timers=Timers(t1=0.02, t2=0.08, t4=0.1), user_agent="u" * 200)
    await sip.start(host=HOST, port=free_port())
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((HOST, 0))
    udp.setblocking(False)
    port = udp.getsockname()[1]
    accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def on_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not accepted.done():
            accepted.set_result(True)
        writer.close()

    server = await asyncio.start_server(on_connection, HOST, port)
    try:
        request = _options_to(port)
        size = len(request.to_bytes())
        # Via (~70 bytes) plus padding: just under the limit without User-Agent
        padding = sip.transports.udp_max_size - size - 120
        request.headers.add("X-Padding", "x" * padding)
        pending = asyncio.ensure_future(sip.request(request, ("UDP", HOST, port)))
        assert await asyncio.wait_for(accepted, 5)
        pending.cancel()
    finally:
        server.close()
        udp.close()
        await sip.stop()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_tls_listener_answers(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sip = SipStack(timers=Timers(), user_agent="test/1")
    tls_port = free_port()
    await sip.start(host=HOST, port=free_port(), tls_port=tls_port, tls_context=context)
    try:
        client = ssl.create_default_context(cafile=str(cert))
        client.check_hostname = False
        reader, writer = await asyncio.open_connection(HOST, tls_port, ssl=client)
        local = writer.get_extra_info("sockname")[1]
        writer.write(
            (
                f"OPTIONS sip:{HOST} SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS {HOST}:{local};branch=z9hG4bKtls1\r\n"
                f"From: <sips:p@{HOST}>;tag=t\r\nTo: <sips:{HOST}>\r\n"
                f"Call-ID: tls-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"SIP/2.0 200 OK")
        writer.close()
    finally:
        await sip.stop()


async def test_replies_ignore_received_and_maddr_written_by_the_sender(
    stack: SipStack,
) -> None:
    """A Via naming a third party must not make the switch a reflector."""
    peer = Peer()
    request = peer.request("OPTIONS").replace(
        b";rport\r\n", b";rport;received=127.0.0.9;maddr=127.0.0.9\r\n", 1
    )
    await peer.send(request, _port(stack))
    response = await peer.receive()
    assert response.status == 200
    assert response.top_via.received == HOST
    assert "maddr" not in response.top_via.params
    peer.close()


async def test_tcp_destination_by_name_survives_a_closed_connection(
    stack: SipStack,
) -> None:
    """A connection dialled by host name is forgotten under every key once closed."""
    port = free_port()
    answered = 0

    async def on_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal answered
        head = await reader.readuntil(b"\r\n\r\n")
        request = parse_message(head)
        assert isinstance(request, Request)
        reply = (
            "SIP/2.0 200 OK\r\n"
            + "".join(
                f"{n}: {v}\r\n"
                for n, v in request.headers
                if n in ("Via", "From", "To", "Call-ID", "CSeq")
            )
            + "Content-Length: 0\r\n\r\n"
        )
        writer.write(reply.encode())
        await writer.drain()
        answered += 1
        writer.close()  # the peer hangs up after each answer

    server = await asyncio.start_server(on_connection, HOST, port)
    for attempt in range(2):
        request = _options_to(port, transport=f"TCP{attempt}")
        response = await asyncio.wait_for(
            stack.request(request, ("TCP", "localhost", port)), 10
        )
        assert response.status == 200
        for _ in range(50):
            if not stack.transports.has_connection(("TCP", "localhost", port)):
                break
            await asyncio.sleep(0.02)
        assert not stack.transports.has_connection(("TCP", "localhost", port))
    assert answered == 2
    server.close()
