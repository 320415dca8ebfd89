"""`python -m visionlens.cli`: the same as the `visionlens` command."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
