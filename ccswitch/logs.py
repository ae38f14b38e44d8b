"""Logging set-up, Call-ID tagged loggers and the SIP trace sink.

Why this module exists: a contact-centre switch carries many calls at once, so a log
line is only useful if it says which call it belongs to; :class:`CallLogAdapter` puts
``[call_id]`` in front of every message (and ``call_id`` on the record for formatters).
The SIP trace (every message in and out, verbatim, RFC 3261 section 7 text) is far too
bulky for the main log, so it goes to its own file through :class:`SipTrace`, never
through the root logger, and costs one attribute test per message when it is off.

The command line calls :func:`setup_logging` once; it configures the root logger and
opens the process-wide trace, which the wiring fetches with :func:`get_sip_trace`.
"""

from __future__ import annotations

import enum
import logging
import sys
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any, TextIO

__all__ = [
    "LOG_FORMAT",
    "CallLogAdapter",
    "SipTrace",
    "TraceDirection",
    "call_logger",
    "get_sip_trace",
    "setup_logging",
]

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TraceDirection(enum.Enum):
    """Which way a traced message went, as written in the trace."""

    RECEIVED = "recv"
    SENT = "sent"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SipTrace:
    """Writes every SIP message sent or received to its own file, verbatim.

    One entry is a header line, the message with CRLF turned into LF, and a blank
    line::

        2025-01-01T12:00:00.123+00:00 recv UDP 127.0.0.1:5060 <- 127.0.0.1:5070 (412 bytes)
        REGISTER sip:ccswitch SIP/2.0
        ...

    The file is opened for appending and line-buffered, so an entry is on disk as
    soon as it is written, even if the switch is killed. Callers test :attr:`enabled`
    before building anything, so a disabled trace costs one attribute read::

        if trace.enabled:
            trace.record(TraceDirection.SENT, "UDP", local, remote, data)

    :param path: the trace file, or ``None`` for a disabled trace.
    :param clock: returns the current time; tests inject a fixed one.
    """

    __slots__ = ("_clock", "_file", "enabled", "path")

    def __init__(
        self, path: str | None, *, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self.path = path
        self._clock = clock
        self._file: IO[str] | None = None
        if path is not None:
            # Open for the life of the trace, not a with-block; close() closes it.
            self._file = open(  # noqa: SIM115
                path, "a", encoding="utf-8", buffering=1, newline="\n"
            )
        self.enabled = self._file is not None

    def record(
        self,
        direction: TraceDirection,
        transport: str,
        local: tuple[str, int],
        remote: tuple[str, int],
        data: bytes,
    ) -> None:
        """Append one message; does nothing when disabled.

        :param transport: ``"UDP"``, ``"TCP"`` or ``"TLS"``.
        :param local: our (host, port); :param remote: the peer's (host, port).
        :param data: the message bytes as on the wire (one message).
        """
        if self._file is None:
            return
        stamp = self._clock().isoformat(timespec="milliseconds")
        arrow = "<-" if direction is TraceDirection.RECEIVED else "->"
        header = (
            f"{stamp} {direction.value} {transport} {_address(local)} {arrow} "
            f"{_address(remote)} ({len(data)} bytes)"
        )
        text = data.decode("utf-8", errors="backslashreplace").replace("\r\n", "\n")
        if not text.endswith("\n"):
            text += "\n"
        self._file.write(f"{header}\n{text}\n")

    def received(
        self,
        transport: str,
        local: tuple[str, int],
        remote: tuple[str, int],
        data: bytes,
    ) -> None:
        """Shorthand for :meth:`record` with :attr:`TraceDirection.RECEIVED`."""
        self.record(TraceDirection.RECEIVED, transport, local, remote, data)

    def sent(
        self,
        transport: str,
        local: tuple[str, int],
        remote: tuple[str, int],
        data: bytes,
    ) -> None:
        """Shorthand for :meth:`record` with :attr:`TraceDirection.SENT`."""
        self.record(TraceDirection.SENT, transport, local, remote, data)

    def close(self) -> None:
        """Close the file; the trace is disabled afterwards."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.enabled = False


class CallLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger for one call: prefixes messages with ``[call_id]``.

    The Call-ID also goes on each record as ``call_id`` (via ``extra``), so a
    formatter or filter can use it without parsing the message.
    """

    def __init__(self, logger: logging.Logger, call_id: str) -> None:
        super().__init__(logger, {"call_id": call_id})
        self.call_id = call_id

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**kwargs.get("extra", {}), "call_id": self.call_id}
        # A Call-ID may hold '%' (RFC 4475 intmeth): keep it out of the format string.
        return f"[{self.call_id.replace('%', '%%')}] {msg}", kwargs


def call_logger(logger: logging.Logger, call_id: str) -> CallLogAdapter:
    """Return ``logger`` wrapped so that its messages name the call ``call_id``."""
    return CallLogAdapter(logger, call_id)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    Test runners swap ``sys.stderr``; a handler holding the old stream would write
    into a closed buffer.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


_handler: logging.Handler | None = None
_trace = SipTrace(None)


def setup_logging(level: str, trace_file: str | None) -> SipTrace:
    """Send log records at ``level`` and above to stderr; open the SIP trace.

    Safe to call again (tests, reloads): the previous handler and trace are replaced.

    :param level: a level name such as ``"INFO"`` (any case).
    :param trace_file: the SIP trace file, or ``None`` for no trace.
    :returns: the process-wide trace, also available from :func:`get_sip_trace`.
    :raises ValueError: for an unknown level name.
    :raises OSError: when the trace file cannot be opened.
    """
    global _handler, _trace
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    trace = SipTrace(trace_file)  # first, so that a failure changes nothing

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StderrHandler()
    _handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(_handler)
    root.setLevel(numeric)

    _trace.close()
    _trace = trace
    if trace.enabled:
        logger.info("SIP trace to %s", trace_file)
    return trace


def get_sip_trace() -> SipTrace:
    """The trace opened by the last :func:`setup_logging` (disabled before that)."""
    return _trace
