"""Random tokens for branches, tags, Call-IDs, CSeq and SDP session ids.

RFC 3261 wants branches and tags globally unique and Call-IDs hard to guess
(sections 8.1.1.4, 8.1.1.7 and 19.3), so they come from the operating system's
CSPRNG, as :mod:`secrets` does. :mod:`secrets` asks the kernel once per token, and a
bridged call takes about ten of them: the bytes are fetched here a page at a time
instead and handed out in order, each byte once. A forked child would otherwise
hand out its parent's bytes again, so it starts with an empty pool. The pool is
taken from without a lock: every caller runs on the event loop's thread (the SIP
stack, call control); a thread of its own would need its own tokens.
"""

from __future__ import annotations

import os
from typing import Final

POOL_SIZE: Final = 4096  # bytes fetched from the kernel at a time


class _Pool:
    """Bytes from ``os.urandom``, kept as hex digits, consumed front to back and never
    reused (two digits per byte).

    Held as text because almost every token is wanted as hex: slicing the digits
    costs one slice, where bytes would be sliced and then converted.
    """

    __slots__ = ("offset", "text")

    def __init__(self) -> None:
        self.text = ""
        self.offset = 0

    def refill(self, size: int) -> None:
        """Fetch a fresh page, at least ``size`` bytes; the unread rest is dropped."""
        self.text = os.urandom(max(POOL_SIZE, size)).hex()
        self.offset = 0

    def empty(self) -> None:
        self.text = ""
        self.offset = 0


_POOL: Final = _Pool()
os.register_at_fork(after_in_child=_POOL.empty)


def token_hex(size: int) -> str:
    """``size`` random bytes as ``2 * size`` lowercase hex digits."""
    # The pool is read here, not through a method: a call holds ten of these.
    pool = _POOL
    start = pool.offset
    end = start + 2 * size
    if end > len(pool.text):
        pool.refill(size)
        start, end = 0, 2 * size
    pool.offset = end
    return pool.text[start:end]


def randbelow(limit: int) -> int:
    """A uniformly random integer in ``[0, limit)`` (rejection sampling, no bias)."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    bits = (limit - 1).bit_length()
    size = (bits + 7) // 8
    while True:
        # A limit of 1 takes no byte at all: "" reads as 0.
        value = int(token_hex(size) or "0", 16) >> (8 * size - bits)
        if value < limit:
            return value
