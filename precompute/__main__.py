"""Entry point for ``python -m precompute`` (and ``torchrun -m precompute``)."""

import sys

from beyond_inet.settings import dist_env
from precompute.cli import main

if __name__ == "__main__":
    code = main()
    if dist_env() is not None:  # a torchrun worker: exit without interpreter teardown
        from beyond_inet.run.distributed import exit_worker

        exit_worker(code)
    sys.exit(code)
