"""The IVR as the switch runs it: the loaded flows, reloads, and the ``ivr`` app.

:class:`FlowRegistry` holds the flows in use. A reload reads the whole folder again and
replaces each flow that loaded cleanly; a file that fails keeps its previous version
running (and is reported), so a typo saved by staff never takes a working menu away.
Calls hold the :class:`~ivr.flow.Flow` object they started with, so a reload applies to
new calls only. :class:`IvrApp` is the application the B2BUA runs for dialplan
destinations ``ivr:FLOW`` (app ``ivr``, argument ``flow``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ivr.flow import Flow
from ivr.loader import FLOW_SUFFIX, FlowError, LoadResult, load_flows
from ivr.prompts import PromptLibrary
from ivr.runner import FlowRunner, Services
from switch.dialplan import Route, RouteRefused, ToApp
from switch.session import CallSession

logger = logging.getLogger(__name__)

#: The flows the demo configuration runs (``[ivr] flows = ""``).
DEMO_FLOWS = Path(__file__).resolve().parent / "flows"
#: Q.850 cause 1, unallocated number: the dialplan names a flow that is not loaded.
CAUSE_UNALLOCATED = 1


class FlowRegistry:
    """The flows in use, by name; see the module doc.

    :param folder: where the ``*.toml`` flow files are.
    :param library: prompt files and languages, checked against every flow.
    """

    def __init__(self, folder: Path, library: PromptLibrary) -> None:
        self.folder = folder
        self.library = library
        self._flows: dict[str, Flow] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._flows))

    def get(self, name: str) -> Flow | None:
        return self._flows.get(name)

    def reload(self) -> LoadResult:
        """Read the folder again; returns what loaded and what failed (logged)."""
        result = load_flows(self.folder, self.library)
        for error in result.errors:
            logger.error("flow not loaded (a running version is kept): %s", error)
        if any(Path(e.source).suffix != FLOW_SUFFIX for e in result.errors):
            # The folder itself is unreadable (gone, not a folder): that says nothing
            # about the flows, so every running one stays.
            logger.error(
                "flows folder %s unusable: all running flows kept", self.folder
            )
            return result
        failed = {Path(e.source).stem for e in result.errors}
        updated = dict(self._flows)
        for name in list(updated):
            if name not in result.flows and name not in failed:
                logger.info("flow %s removed (its file is gone)", name)
                del updated[name]
        updated.update(result.flows)
        self._flows = updated
        logger.info(
            "flows in use from %s: %s", self.folder, ", ".join(self.names) or "none"
        )
        return result


def dialplan_transfers(session: CallSession, target: str) -> Route | str | int:
    """Route a transfer target: ``user:NAME``, or a number through the dialplan.

    The caller's own rights apply (a trunk caller cannot be sent out of a trunk).
    """
    kind, colon, name = target.partition(":")
    if colon and kind == "user":
        return name
    call = session.call
    try:
        route = call.b2bua.dialplan.route(called=target, caller=call.caller)
    except RouteRefused as refused:
        return refused.status
    if isinstance(route, ToApp):
        # TODO: a flow transferring to another local app (a second flow, echo) would
        # need a new session over the answered leg; such targets are refused (488).
        return 488
    return route


class IvrApp:
    """The ``ivr`` application: runs the flow named by the route's ``flow`` argument."""

    def __init__(self, *, registry: FlowRegistry, services: Services) -> None:
        self.registry = registry
        self.services = services

    async def __call__(self, session: CallSession, route: ToApp) -> None:
        name = route.arg("flow") or ""
        flow = self.registry.get(name)
        if flow is None:
            logger.warning(
                "[%s] flow %r is not loaded (loaded: %s)",
                session.call.call_id,
                name,
                ", ".join(self.registry.names) or "none",
            )
            await session.hangup(status=404, cause=CAUSE_UNALLOCATED)
            return
        runner = FlowRunner(
            flow, session, call_id=session.call.call_id, services=self.services
        )
        await runner.run()


__all__ = ["DEMO_FLOWS", "FlowError", "FlowRegistry", "IvrApp", "dialplan_transfers"]
