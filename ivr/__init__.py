"""IVR flows and the flow runner (issue 5).

``flow`` is the model, ``loader`` reads and validates flow files, ``runner`` walks a
caller through a flow over :class:`switch.session.CallSession`, ``speech`` turns numbers
and durations into prompt words (ru, en), ``crm`` does data dips, ``events`` and
``record`` put each step on the bus and into the CDR, ``service`` holds the loaded flows
and is the ``ivr`` application. Imports ``switch.session``, ``switch.dialplan``,
``switch.events`` and ``media.commands``; the switch never imports ``ivr``.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
