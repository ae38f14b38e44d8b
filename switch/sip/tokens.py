"""Random tokens for branches, tags, Call-IDs, CSeq and SDP session ids.

RFC 3261 wants branches and tags globally unique and Call-IDs hard to guess
(sections 8.1.1.4, 8.1.1.7 and 19.3), so they come from the operating system's
CSPRNG, as :mod:`secrets` does. :mod:`secrets` asks the kernel once per token, and a
bridged call takes about ten of them: the bytes are fetched here a page at a time
instead and handed out in order, each byte once. A forked child would otherwise
hand out its parent's bytes again, so it starts with an empty pool.
"""

from __future__ import annotations

import os
from typing import Final

POOL_SIZE: Final = 4096  # bytes fetched from the kernel at a time


class _Pool:
    """Bytes from ``os.urandom``, consumed front to back and never reused."""

    __slots__ = ("data", "offset")

    def __init__(self) -> None:
        self.data = b""
        self.offset = 0

    def take(self, size: int) -> bytes:
        start = self.offset
        end = start + size
        if end > len(self.data):
            self.data = os.urandom(max(POOL_SIZE, size))
            start, end = 0, size
        self.offset = end
        return self.data[start:end]

    def empty(self) -> None:
        self.data = b""
        self.offset = 0


_POOL: Final = _Pool()
os.register_at_fork(after_in_child=_POOL.empty)


def token_hex(size: int) -> str:
    """``size`` random bytes as ``2 * size`` lowercase hex digits."""
    return _POOL.take(size).hex()


def randbelow(limit: int) -> int:
    """A uniformly random integer in ``[0, limit)`` (rejection sampling, no bias)."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    bits = (limit - 1).bit_length()
    size = (bits + 7) // 8
    while True:
        value = int.from_bytes(_POOL.take(size), "big") >> (8 * size - bits)
        if value < limit:
            return value
