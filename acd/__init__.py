"""The ACD: agents, queues, routing, admission and callbacks (issue 6).

The decision core is sans-IO and clock-injected (``distributor``, ``agent``,
``queue``, ``strategies``, ``estimate``, ``admission``, ``records``, ``stats``,
``simulate``); ``service`` runs it over live calls with asyncio and ``log`` keeps
the queue log in SQLite. ``acd`` imports ``switch.session``, ``switch.dialplan``
and ``media.commands``; ``switch`` never imports ``acd``.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
