"""RTP media: G.711, RTP/RTCP packets, DTMF, comfort noise, tones and the media engine.

Imports nothing from the other ccswitch packages (only the standard library and numpy),
so it can be tested and benchmarked on its own.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
