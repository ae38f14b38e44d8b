"""Sans-IO SIP core (RFC 3261 and friends).

Nothing here owns a socket or reads a clock: callers hand in bytes and ``now`` and get
back messages, events and the next deadline. See ``docs/sip-core.md`` for the map.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
