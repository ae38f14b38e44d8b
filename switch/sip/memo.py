"""Bounded memos of parse results, keyed by the exact text that was parsed.

A call's messages repeat the same few URIs, addresses, CSeq values and SDP lines, so
the parsers keep what they parsed by its text. A peer may send ever-new or very long
values, so every memo here has one policy: texts longer than :data:`MAX_TEXT` are
parsed but never kept, and a memo that reaches its size is emptied. A parse that
raises stores nothing, so an error is found again every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

#: Entries one memo holds before it is emptied.
MEMO_SIZE: Final = 4096
#: The longest text a memo keeps.
MAX_TEXT: Final = 256

_V = TypeVar("_V")


def remember(memo: dict[str, _V], text: str, value: _V, size: int = MEMO_SIZE) -> _V:
    """Keep ``value`` under ``text`` (unless the text is too long); return ``value``."""
    if len(text) <= MAX_TEXT:
        if len(memo) >= size:
            memo.clear()
        memo[text] = value
    return value


class ParseMemo(dict[str, _V]):
    """``memo[text]`` is ``parse(text)``, parsed on the first look-up only.

    A hit is a plain dict look-up; a miss parses and :func:`remember` s the result.
    """

    def __init__(self, parse: Callable[[str], _V], maxsize: int = MEMO_SIZE) -> None:
        super().__init__()
        self.parse = parse
        self.maxsize = maxsize

    def __missing__(self, text: str) -> _V:
        return remember(self, text, self.parse(text), self.maxsize)
