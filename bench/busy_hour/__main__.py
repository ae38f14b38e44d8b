"""``python -m bench.busy_hour``: see :mod:`bench.busy_hour` and ``--help``."""

import sys

from bench.busy_hour.cli import main

sys.exit(main())
