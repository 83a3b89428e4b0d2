"""Entry point for ``python -m precompute``."""

import sys

from precompute.cli import main

if __name__ == "__main__":
    sys.exit(main())
