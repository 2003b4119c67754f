"""`python -m statekit`: the `statekit` command line."""

from __future__ import annotations

from statekit.cli import main

if __name__ == "__main__":
    main()
