"""The two error directions of the SIP core.

A :class:`ProtocolError` is the remote side's fault (garbage on the wire, a request we
must refuse). It carries the status and reason phrase to answer with, so one boundary
(the transport glue) can turn it into a response. A :class:`LocalProtocolError` is our
own misuse of the API and is a bug, never something the network can trigger.
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every error the SIP core raises on purpose."""


class ProtocolError(SipError):
    """The peer sent something we refuse; answer with ``status`` and ``reason``.

    :param reason: the reason phrase for the response; it names the defect so that
        whoever reads the peer's log learns what was wrong (RFC 3261 section 21 lets
        the phrase be any text).
    :param status: the SIP status code to reply with (400 unless said otherwise).
    :param headers: extra header lines for the error response, such as
        ``("Unsupported", "foo")`` for a 420 (RFC 3261 section 8.2.2.3).
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int = 400,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers


class BadMessage(ProtocolError):
    """The bytes are not a SIP message we can read (always answered 400 if a request)."""


class LocalProtocolError(SipError):
    """The caller of this API broke its contract (a bug on our side)."""
