"""Data dips: ask a CRM about the caller over HTTP, and the demo CRM ccswitch serves.

:func:`data_dip` is what an ``http`` node runs. Its contract with the flow is narrow on
purpose: it always returns within the node's timeout, never raises, and says how it
went (:class:`~ivr.events.DipOutcome`), so a CRM that is down, slow or answers garbage
costs the caller one fallback branch and not the call. Only a JSON object whose every
wanted field is a scalar counts as an answer.

:class:`DemoCrm` is a tiny aiohttp application on loopback for the demo flow: it knows
a few numbers and answers ``{"found": ..., "name": ..., "tier": ..., "language": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from ivr.events import DipOutcome
from ivr.flow import HttpMethod

logger = logging.getLogger(__name__)

#: Largest CRM answer read (bytes); a CRM that sends more is answering garbage.
MAX_RESPONSE = 64 * 1024
#: The demo CRM's customers, by E.164 caller number.
DEMO_CUSTOMERS: dict[str, dict[str, str]] = {
    "+74951234567": {"name": "Ivan Petrov", "tier": "gold", "language": "ru"},
    "+74957654321": {"name": "Anna Smirnova", "tier": "regular", "language": "ru"},
    "+442079460000": {"name": "John Smith", "tier": "gold", "language": "en"},
}
DEMO_PATH = "/customers"


@dataclass(frozen=True, kw_only=True, slots=True)
class DipResult:
    """What a data dip found; ``fields`` only when ``outcome`` is OK."""

    outcome: DipOutcome
    status: int | None
    elapsed_ms: float
    fields: tuple[tuple[str, str], ...] = ()


def _scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _fields(
    body: bytes, wanted: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...] | None:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    found = []
    for variable, key in wanted:
        value = _scalar(data.get(key))
        if value is None:
            return None
        found.append((variable, value))
    return tuple(found)


async def data_dip(
    http: aiohttp.ClientSession,
    *,
    url: str,
    method: HttpMethod,
    payload: dict[str, str],
    timeout: float,
    wanted: tuple[tuple[str, str], ...],
) -> DipResult:
    """GET ``url`` with ``payload`` as query, or POST it as JSON; bounded by ``timeout``.

    :param wanted: (variable, JSON key) pairs that must all be in the answer.
    """
    # TODO: no request headers (API keys, bearer tokens) or TLS client settings can
    # be configured per http node; cost: CRMs that need authentication are out of
    # reach until flows can name a credential from the configuration.
    started = time.monotonic()

    def result(
        outcome: DipOutcome,
        status: int | None = None,
        fields: tuple[tuple[str, str], ...] = (),
    ) -> DipResult:
        elapsed = (time.monotonic() - started) * 1000.0
        return DipResult(
            outcome=outcome, status=status, elapsed_ms=elapsed, fields=fields
        )

    try:
        async with asyncio.timeout(timeout):
            if method is HttpMethod.GET:
                request = http.get(url, params=payload)
            else:
                request = http.post(url, json=payload)
            async with request as response:
                body = await response.content.read(MAX_RESPONSE + 1)
                status = response.status
    except TimeoutError:
        return result(DipOutcome.TIMEOUT)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        logger.debug("data dip %s failed: %s", url, exc)
        return result(DipOutcome.UNREACHABLE)
    if not 200 <= status < 300:
        return result(DipOutcome.HTTP_ERROR, status)
    fields = _fields(body, wanted) if len(body) <= MAX_RESPONSE else None
    if fields is None:
        return result(DipOutcome.BAD_RESPONSE, status)
    return result(DipOutcome.OK, status, fields)


class DemoCrm:
    """The demo CRM on ``host:port`` (loopback): ``GET|POST /customers?caller=N``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        customers: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.customers = DEMO_CUSTOMERS if customers is None else customers
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{DEMO_PATH}"

    async def _lookup(self, request: web.Request) -> web.Response:
        caller = request.query.get("caller", "")
        if request.method == "POST":
            try:
                body = await request.json()
                caller = str(body.get("caller", "")) if isinstance(body, dict) else ""
            except (json.JSONDecodeError, UnicodeDecodeError):
                return web.json_response({"error": "body is not JSON"}, status=400)
        customer = self.customers.get(caller)
        if customer is None:
            answer = {"found": "no", "name": "", "tier": "none", "language": ""}
        else:
            answer = {"found": "yes", **customer}
        return web.json_response(answer)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(DEMO_PATH, self._lookup)
        app.router.add_post(DEMO_PATH, self._lookup)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        logger.info("demo CRM on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
