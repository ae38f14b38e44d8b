"""Factories for ACD core tests: a distributor with named agents on a fake clock."""

from __future__ import annotations

from acd.agent import Agent, Membership
from acd.distributor import Distributor, Offer
from acd.queue import QueueSettings
from acd.strategies import load_strategies


def make(
    agents: int = 3,
    *,
    queue: QueueSettings | None = None,
    login: bool = True,
    skills: dict[str, dict[str, int]] | None = None,
    penalties: dict[str, int] | None = None,
    **kwargs: object,
) -> Distributor:
    queue = queue or QueueSettings(name="support")
    members = []
    for number in range(1, agents + 1):
        name = f"a{number}"
        members.append(
            Agent(
                name=name,
                users=(f"10{number:02d}",),
                memberships=(
                    Membership(
                        queue=queue.name, penalty=(penalties or {}).get(name, 0)
                    ),
                ),
                skills=(skills or {}).get(name, {}),
            )
        )
    acd = Distributor(
        queues=[queue], agents=members, strategies=load_strategies(), **kwargs
    )
    for agent in members:
        acd.registered(agent.users[0], True, 0.0)
        if login:
            acd.login(agent.name, 0.0)
    return acd


def offers(actions: list[object]) -> list[Offer]:
    return [a for a in actions if isinstance(a, Offer)]
