"""How fast does ``python -m precompute`` answer when nothing has to run?

    python benchmarks/bench_cli.py [--repeat 3]

Times, in fresh processes (wall clock, median of ``--repeat``): ``--help``,
``--list-datasets`` on an empty data root, an argument error, and for comparison
``import torch`` alone. The goal is under 2 s on an idle 2-core machine; reports only.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 2.0


def _wall(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, timeout=300)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as empty:
        cases = {
            "--help": ["-m", "precompute", "--help"],
            "--list-datasets (empty root)": [
                "-m",
                "precompute",
                "--list-datasets",
                "--data-root",
                empty,
            ],
            "argument error (--scales x)": ["-m", "precompute", "--scales", "x"],
            "import torch (reference)": ["-c", "import torch"],
        }
        print(f"{'command':32s} {'seconds':>8s}")
        for name, cmd in cases.items():
            s = statistics.median(_wall(cmd) for _ in range(args.repeat))
            flag = "" if s < GOAL_S or "reference" in name else f"  (> {GOAL_S:.0f} s goal)"
            print(f"{name:32s} {s:8.2f}{flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
