"""The pooled random tokens: fresh bytes every time, unbiased bounds, none after a fork."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.sip import tokens


def test_tokens_are_hex_of_the_size_asked_and_never_repeat() -> None:
    seen = {tokens.token_hex(8) for _ in range(3 * tokens.POOL_SIZE // 8)}

    assert len(seen) == 3 * tokens.POOL_SIZE // 8  # crosses two refills
    assert all(len(token) == 16 and int(token, 16) >= 0 for token in seen)


def test_a_token_larger_than_the_pool_is_served_whole() -> None:
    assert len(tokens.token_hex(tokens.POOL_SIZE + 5)) == 2 * (tokens.POOL_SIZE + 5)


@given(st.integers(min_value=1, max_value=2**64))
def test_randbelow_stays_below_its_limit(limit: int) -> None:
    assert 0 <= tokens.randbelow(limit) < limit


def test_randbelow_covers_a_small_range_evenly() -> None:
    counts = [0] * 3
    for _ in range(3000):
        counts[tokens.randbelow(3)] += 1

    # 1000 expected each; a biased draw (e.g. modulo of a byte) would still pass this,
    # but a draw that never reaches the top value or sticks to one would not
    assert all(800 < count < 1200 for count in counts)


def test_randbelow_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError):
        tokens.randbelow(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_hand_out_its_parents_bytes() -> None:
    tokens.token_hex(1)  # the pool holds unread bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next token and leave at once
        os.write(write, tokens.token_hex(16).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)

    assert len(child) == 32
    assert child != tokens.token_hex(16)  # the parent's next bytes differ
