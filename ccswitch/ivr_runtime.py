"""Wiring of the IVR into a running switch: flows, prompts, the demo CRM, reloads.

:class:`IvrRuntime` turns the ``[ivr]`` configuration into the pieces of :mod:`ivr`
and owns their lifetimes: the flow registry (loaded at start, reloaded on SIGHUP or
``ccswitch flows reload``), the shared :class:`~ivr.runner.Services` (an aiohttp client
for data dips, the ACD hand-off), the CDR step recorder and, in demo mode, the demo CRM
on loopback. The ACD plugs in by setting ``services.queue``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from pyee import EventEmitter

from ccswitch.config import IvrConfig
from ivr.crm import DemoCrm
from ivr.loader import LoadResult
from ivr.prompts import DEFAULT_PROMPTS, PromptLibrary
from ivr.record import IvrStepRecorder, IvrStepStore
from ivr.runner import Services
from ivr.service import DEMO_FLOWS, FlowRegistry, IvrApp, dialplan_transfers

logger = logging.getLogger(__name__)

#: The signal that makes a running switch reload its flows.
RELOAD_SIGNAL = signal.SIGHUP


def flow_folder(config: IvrConfig) -> Path:
    return Path(config.flows) if config.flows else DEMO_FLOWS


def prompt_library(config: IvrConfig) -> PromptLibrary:
    root = Path(config.prompts) if config.prompts else DEFAULT_PROMPTS
    return PromptLibrary(root=root, languages=config.languages)


class IvrRuntime:
    """The IVR of one switch; ``app`` is what the B2BUA runs for ``ivr:FLOW``."""

    def __init__(
        self, config: IvrConfig, *, bus: EventEmitter, store: IvrStepStore
    ) -> None:
        self.config = config
        self.registry = FlowRegistry(flow_folder(config), prompt_library(config))
        self.services = Services(
            library=self.registry.library,
            time_zone=ZoneInfo(config.time_zone),
            bus=bus,
            resolve_transfer=dialplan_transfers,
            variables=dict(config.variables),
        )
        self.app = IvrApp(registry=self.registry, services=self.services)
        self.recorder = IvrStepRecorder(bus=bus, store=store)
        self.crm: DemoCrm | None = None
        if config.crm_listen_host is not None and config.crm_listen_port is not None:
            self.crm = DemoCrm(host=config.crm_listen_host, port=config.crm_listen_port)
        self._signal_installed = False

    def reload(self) -> LoadResult:
        """Load the flow folder again (new calls get the new flows)."""
        return self.registry.reload()

    async def start(self) -> None:
        result = self.reload()
        root = self.registry.library.root
        if result.errors and not any(root.glob("*/*.wav")):
            logger.error(
                "no prompt files in %s: run `python prompts/build.py` (.ci/setup does)",
                root,
            )
        self.recorder.start()
        self.services.http = aiohttp.ClientSession()
        if self.crm is not None:
            try:
                await self.crm.start()
            except OSError as exc:  # the port is taken: the demo's dips fall back
                logger.error("demo CRM not started on %s: %s", self.crm.url, exc)
                await self.crm.stop()
                self.crm = None
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(RELOAD_SIGNAL, self._on_reload_signal)
            self._signal_installed = True
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
            logger.debug("no SIGHUP handler outside the main thread")
        if self.config.pid_file:
            Path(self.config.pid_file).write_text(f"{os.getpid()}\n")

    def _on_reload_signal(self) -> None:
        logger.info("%s received, reloading flows", RELOAD_SIGNAL.name)
        self.reload()

    async def stop(self) -> None:
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(RELOAD_SIGNAL)
            self._signal_installed = False
        if self.config.pid_file:
            with contextlib.suppress(OSError):
                pid_file = Path(self.config.pid_file)
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
        if self.crm is not None:
            await self.crm.stop()
        if self.services.http is not None:
            await self.services.http.close()
            self.services.http = None
        await self.recorder.stop()
