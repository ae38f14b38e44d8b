"""Let ``python -m ccswitch`` behave exactly like the ``ccswitch`` console script."""

from __future__ import annotations

from ccswitch.cli import main

if __name__ == "__main__":
    main(prog_name="ccswitch")
