"""Tests for media.ports: even/odd pairs, no reuse before release, clear exhaustion."""

from __future__ import annotations

import _socket
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.ports import SOCKET_BUFFER_BYTES, PortAllocator, PortsExhausted, bind_pair

BASE = 47000  # a range no other media test binds


def test_allocates_even_ports_in_range() -> None:
    allocator = PortAllocator(10001, 10010)
    ports = [allocator.allocate() for _ in range(allocator.capacity)]
    assert ports == [10002, 10004, 10006, 10008]
    assert all(port % 2 == 0 and port + 1 <= 10010 for port in ports)


def test_exhaustion_raises_with_the_range_in_the_message() -> None:
    allocator = PortAllocator(10000, 10003)
    allocator.allocate()
    allocator.allocate()
    with pytest.raises(PortsExhausted, match="10000-10003"):
        allocator.allocate()


def test_released_port_is_reused_last() -> None:
    allocator = PortAllocator(10000, 10007)
    first = allocator.allocate()
    allocator.release(first)
    assert [allocator.allocate() for _ in range(4)] == [10002, 10004, 10006, first]


def test_double_release_is_an_error() -> None:
    allocator = PortAllocator(10000, 10007)
    port = allocator.allocate()
    allocator.release(port)
    with pytest.raises(ValueError, match="not allocated"):
        allocator.release(port)


@pytest.mark.parametrize(("low", "high"), [(0, 100), (100, 100), (60000, 70000)])
def test_bad_range_rejected(low: int, high: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(low, high)


@given(st.lists(st.booleans(), max_size=60))
def test_never_hands_out_a_port_twice(actions: list[bool]) -> None:
    allocator = PortAllocator(20000, 20019)
    held: list[int] = []
    for allocate in actions:
        if allocate:
            try:
                port = allocator.allocate()
            except PortsExhausted:
                assert len(held) == allocator.capacity
                continue
            assert port not in held
            held.append(port)
        elif held:
            allocator.release(held.pop(0))
        assert allocator.in_use == len(held)


def test_bind_pair_binds_rtp_and_rtcp() -> None:
    allocator = PortAllocator(BASE, BASE + 9)
    port, rtp, rtcp = bind_pair(allocator, "127.0.0.1")
    try:
        assert rtp.getsockname() == ("127.0.0.1", port)
        assert rtcp.getsockname() == ("127.0.0.1", port + 1)
        assert allocator.is_allocated(port)
    finally:
        rtp.close()
        rtcp.close()


def test_bind_pair_skips_a_port_held_elsewhere() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", BASE + 11))  # the RTCP half of the first pair
    allocator = PortAllocator(BASE + 10, BASE + 19)
    try:
        port, rtp, rtcp = bind_pair(allocator, "127.0.0.1")
        rtp.close()
        rtcp.close()
        assert port == BASE + 12
        assert not allocator.is_allocated(BASE + 10)
    finally:
        blocker.close()


def test_bind_pair_exhausted_when_everything_is_busy() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", BASE + 20))
    allocator = PortAllocator(BASE + 20, BASE + 21)
    try:
        with pytest.raises(PortsExhausted):
            bind_pair(allocator, "127.0.0.1")
        assert allocator.in_use == 0
    finally:
        blocker.close()


def test_bind_pair_sockets_are_non_blocking_with_a_deep_rtp_receive_buffer() -> None:
    allocator = PortAllocator(BASE + 30, BASE + 39)
    _port, rtp, rtcp = bind_pair(allocator, "127.0.0.1")
    try:
        assert rtp.gettimeout() == 0.0
        assert rtcp.gettimeout() == 0.0
        assert rtp.type == socket.SOCK_DGRAM  # the non-blocking flag is not the type
        # Linux grants what was asked up to net.core.rmem_max, and reports twice that
        # (its bookkeeping overhead).
        granted = min(SOCKET_BUFFER_BYTES, _rmem_max())
        received = rtp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert received >= granted
    finally:
        rtp.close()
        rtcp.close()


def _rmem_max() -> int:
    """The largest receive buffer an unprivileged SO_RCVBUF gets (Linux), else ours."""
    try:
        with open("/proc/sys/net/core/rmem_max") as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return SOCKET_BUFFER_BYTES


def test_bind_pair_sockets_are_plain_c_sockets_that_close_like_socket_objects() -> None:
    """bind_pair skips socket.socket's Python wrapper (its __init__ and close cost more
    than the rest of set-up); the C type must still close idempotently and report it."""
    allocator = PortAllocator(BASE + 40, BASE + 49)
    _port, rtp, rtcp = bind_pair(allocator, "127.0.0.1")
    assert type(rtp) is _socket.socket and type(rtcp) is _socket.socket
    for sock in (rtp, rtcp):
        sock.close()
        sock.close()  # a second close is harmless, as with socket.socket
        assert sock.fileno() == -1
