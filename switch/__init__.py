"""SIP signalling: transports, registrar, keep-alives and the stack glue.

``switch.sip`` is the sans-IO protocol core; the modules here put it on sockets.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
