"""REGISTER over the wire from a Python phone, and hostile bytes on the SIP port.

SIPp 3.6.1 and baresip 1.0.0 only answer MD5, so SHA-256 digest (RFC 8760) is shown
end to end here with :class:`switch.sip.auth.DigestClient` on a plain socket, over UDP
and TCP, against a real ``ccswitch serve`` that offers SHA-256 first. The second half
sends garbage, truncated and refused requests and checks that the switch answers
what can be answered (RFC 3261 section 8.2: 483, 420 with Unsupported) and keeps
answering OPTIONS afterwards: nothing from the network may stop it.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.sip.auth import parse_challenge, parse_credentials
from switch.sip.message import Response
from tests.e2e.phone import ScriptedPhone, trace_entries
from tests.harness import LOOPBACK, SwitchProcess, demo_config, options_ping

SEED = 4475


@pytest.fixture
def sha256_switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    """A switch offering SHA-256 first, as RFC 8760 section 2.4 recommends."""
    config = demo_config(tmp_path, digest_algorithms='"SHA-256, MD5"')
    process = SwitchProcess(workdir=tmp_path, config=config).start()
    try:
        yield process
    finally:
        process.stop()


def _assert_alive(switch: SwitchProcess) -> None:
    assert switch.proc is not None and switch.proc.poll() is None, switch.log()[-3000:]
    reply = options_ping(switch.port, timeout=2.0)
    assert reply is not None and reply.startswith(b"SIP/2.0 200"), reply
    log = switch.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def _challenge_algorithms(response: Response) -> list[str]:
    return [
        parse_challenge(value).algorithm
        for value in response.headers.get_all("WWW-Authenticate")
    ]


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_register_with_sha256_digest(
    sha256_switch: SwitchProcess, transport: str
) -> None:
    with ScriptedPhone(
        server_port=sha256_switch.port,
        user="1001",
        password="demo1001",
        transport=transport,
    ) as phone:
        outcome = phone.register(expires=300)
        contact = phone.contact

    assert outcome.final.status == 200, outcome.final.to_bytes().decode()
    # One 401 offering both, SHA-256 first; the client chose SHA-256 (RFC 8760 2.4).
    assert len(outcome.challenges) == 1
    assert _challenge_algorithms(outcome.challenges[0]) == ["SHA-256", "MD5"]
    (authorization,) = outcome.authorizations
    credentials = parse_credentials(authorization)
    assert credentials.algorithm == "SHA-256"
    assert len(credentials.response) == 64  # SHA-256 digest in hex
    assert credentials.qop == "auth" and credentials.nc == 1
    # The 200 lists the new binding (RFC 3261 section 10.3 step 8).
    contacts = outcome.final.headers.get_all("Contact")
    assert any(contact in value for value in contacts), contacts

    # On the wire: the authenticated REGISTER really carried algorithm=SHA-256.
    registers = [
        entry
        for entry in trace_entries(sha256_switch.trace())
        if entry.direction == "recv" and entry.start_line.startswith("REGISTER ")
    ]
    assert [entry.transport for entry in registers] == [transport, transport]
    (sent_authorization,) = registers[1].header("Authorization")
    assert "algorithm=SHA-256" in sent_authorization


def test_wrong_password_is_challenged_again(sha256_switch: SwitchProcess) -> None:
    with ScriptedPhone(
        server_port=sha256_switch.port, user="1002", password="wrong"
    ) as phone:
        outcome = phone.register()
    # DigestClient answers once, then gives up on the second, non-stale challenge.
    assert outcome.final.status == 401
    assert len(outcome.challenges) == 2 and len(outcome.authorizations) == 1
    assert "stale=true" not in outcome.final.to_bytes().decode().lower()
    assert "response digest mismatch" in sha256_switch.log()


def test_garbage_and_truncated_datagrams_do_not_stop_the_switch(
    switch: SwitchProcess,
) -> None:
    generator = random.Random(SEED)
    with ScriptedPhone(
        server_port=switch.port, user="1003", password="demo1003"
    ) as phone:
        register = phone.request("REGISTER", contact=f"<{phone.contact}>", expires=300)
        good = register.to_bytes()
        hostile = [
            b"",
            b"\r\n",
            b"\x00" * 100,
            b"\xff\xfe" * 700,
            bytes(generator.randrange(256) for _ in range(1200)),
            b"REGISTER",
            b"SIP/2.0 200 OK\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nVia: \xff\r\n\r\n",
            good.replace(b"Content-Length: 0", b"Content-Length: 99999"),
            good.replace(b"CSeq: 1 REGISTER", b"CSeq: 99999999999999 REGISTER"),
        ]
        # Every cut of a good REGISTER, at a stride to keep it quick.
        hostile += [good[:cut] for cut in range(1, len(good), 7)]
        for data in hostile:
            phone.send_bytes(data)
        # A datagram can hold a message that is nearly 64 KiB.
        phone.send_bytes(
            b"OPTIONS " + bytes(generator.randrange(32, 127) for _ in range(60000))
        )

        # Whatever it answered (400 where a request could be salvaged), it answers a
        # well-formed request afterwards, on the same socket.
        options = phone.request("OPTIONS")
        assert phone.exchange(options, timeout=5.0).status == 200
    _assert_alive(switch)
    assert "unparseable message from" in switch.log()  # one DEBUG line per datagram


def test_garbage_over_tcp_does_not_stop_the_switch(switch: SwitchProcess) -> None:
    for payload in (
        b"\x16\x03\x01\x02\x00" + b"\x00" * 512,  # a TLS ClientHello
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"REGISTER sip:x SIP/2.0\r\nContent-Length: nope\r\n\r\n",
    ):
        with socket.create_connection((LOOPBACK, switch.port), timeout=2.0) as sock:
            sock.sendall(payload)
            sock.settimeout(2.0)
            try:
                while sock.recv(65535):
                    pass  # read whatever comes until the switch closes or we time out
            except (TimeoutError, ConnectionResetError):
                pass
    _assert_alive(switch)


def test_max_forwards_zero_gets_483(switch: SwitchProcess) -> None:
    with ScriptedPhone(
        server_port=switch.port, user="1004", password="demo1004"
    ) as phone:
        request = phone.request("REGISTER", contact=f"<{phone.contact}>", expires=300)
        request.headers.set("Max-Forwards", "0")
        response = phone.exchange(request)
    assert response.status == 483
    _assert_alive(switch)


def test_unsupported_require_gets_420_naming_it(switch: SwitchProcess) -> None:
    with ScriptedPhone(
        server_port=switch.port, user="1005", password="demo1005"
    ) as phone:
        request = phone.request(
            "REGISTER",
            contact=f"<{phone.contact}>",
            expires=300,
            extra=[("Require", "x-no-such-extension, timer")],
        )
        response = phone.exchange(request)
    assert response.status == 420
    # Section 8.2.2.3: Unsupported lists what we lack, not what we support.
    assert response.headers.get_all("Unsupported") == ["x-no-such-extension"]
    _assert_alive(switch)


def test_request_without_call_id_gets_400(switch: SwitchProcess) -> None:
    with ScriptedPhone(
        server_port=switch.port, user="1006", password="demo1006"
    ) as phone:
        request = phone.request("OPTIONS")
        request.headers.remove("Call-ID")
        response = phone.exchange(request)
    assert response.status == 400
    _assert_alive(switch)
