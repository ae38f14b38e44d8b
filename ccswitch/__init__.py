"""ccswitch: the application package (configuration, logging, command line, wiring).

The SIP core (``switch.sip``) and the media engine (``media``) know nothing of this
package; ``ccswitch`` is where they are configured and started. Importing it must stay
cheap and side-effect free, so it only defines the version and, as libraries should,
a ``NullHandler`` so that nothing is printed unless the application sets up logging.
"""

from __future__ import annotations

import logging

__all__ = ["__version__"]

# Keep in step with ``[project] version`` in pyproject.toml.
# TODO: single-source the version (setuptools dynamic attr) so the two cannot drift.
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
