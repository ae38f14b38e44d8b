"""Data dips against real HTTP servers on 127.0.0.1: good, slow, garbage, down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from ivr.crm import MAX_RESPONSE, DemoCrm, DipResult, data_dip
from ivr.events import DipOutcome
from ivr.flow import HttpMethod
from tests.harness import free_port

WANTED = (("tier", "tier"), ("found", "found"))


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(3)
    return web.json_response({"tier": "gold", "found": "yes"})


async def _garbage(request: web.Request) -> web.Response:
    return web.Response(text="<html>oops</html>", content_type="text/html")


async def _array(request: web.Request) -> web.Response:
    return web.json_response(["tier", "gold"])


async def _missing(request: web.Request) -> web.Response:
    return web.json_response({"tier": "gold"})


async def _nested(request: web.Request) -> web.Response:
    return web.json_response({"tier": {"level": 1}, "found": "yes"})


async def _error(request: web.Request) -> web.Response:
    return web.json_response({"tier": "gold", "found": "yes"}, status=500)


async def _huge(request: web.Request) -> web.Response:
    return web.Response(body=b" " * (MAX_RESPONSE + 10) + b"{}")


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in (
        ("/slow", _slow),
        ("/garbage", _garbage),
        ("/array", _array),
        ("/missing", _missing),
        ("/nested", _nested),
        ("/error", _error),
        ("/huge", _huge),
    ):
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def demo_crm() -> AsyncIterator[DemoCrm]:
    crm = DemoCrm(host="127.0.0.1", port=free_port())
    await crm.start()
    yield crm
    await crm.stop()


async def dip(
    url: str, *, method: HttpMethod = HttpMethod.GET, timeout: float = 1.0
) -> DipResult:
    async with aiohttp.ClientSession() as http:
        return await data_dip(
            http,
            url=url,
            method=method,
            payload={"caller": "+74951234567"},
            timeout=timeout,
            wanted=WANTED,
        )


@pytest.mark.parametrize("method", [HttpMethod.GET, HttpMethod.POST])
async def test_the_demo_crm_answers_a_known_caller(
    demo_crm: DemoCrm, method: HttpMethod
) -> None:
    result = await dip(demo_crm.url, method=method)
    assert result.outcome is DipOutcome.OK
    assert result.status == 200
    assert dict(result.fields) == {"tier": "gold", "found": "yes"}


async def test_a_slow_crm_times_out_within_the_timeout(server: str) -> None:
    started = time.monotonic()
    result = await dip(f"{server}/slow", timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.outcome is DipOutcome.TIMEOUT
    assert 0.45 <= elapsed < 1.5
    assert result.fields == ()


@pytest.mark.parametrize("path", ["/garbage", "/array", "/missing", "/nested", "/huge"])
async def test_garbage_is_a_bad_response(server: str, path: str) -> None:
    result = await dip(f"{server}{path}")
    assert result.outcome is DipOutcome.BAD_RESPONSE
    assert result.status == 200
    assert result.fields == ()


async def test_a_server_error_is_an_http_error(server: str) -> None:
    result = await dip(f"{server}/error")
    assert (result.outcome, result.status) == (DipOutcome.HTTP_ERROR, 500)


@pytest.mark.parametrize("url", [f"http://127.0.0.1:{free_port()}/x", "", "nonsense"])
async def test_nobody_listening_or_a_bad_url_is_unreachable(url: str) -> None:
    result = await dip(url)
    assert result.outcome is DipOutcome.UNREACHABLE
